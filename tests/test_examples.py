"""Image layer: the example apps (examples/), each built into the image as its
README says and driven through Nginx on port 1300, hardened: read-only, as an
arbitrary UID in group 0, under the seccomp profile."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import websocket
from PIL import Image
from selenium import webdriver

from harness.browser import FLAGS
from harness.checks import LOG_DELAY_SECONDS, access_log, records
from harness.containers import Container
from harness.engine import Engine
from harness.examples import EXAMPLES
from harness.images import HARDENED
from harness.metrics import scrape
from stack.protocol import HEALTH_PATH

pytestmark = [pytest.mark.image, pytest.mark.hardened, pytest.mark.engine]

PACKAGE = EXAMPLES / "package"
SHOP = {"APP_MODULE": "shop:create_app()"}
INSTANCE = "/srv/app/instance"
SEEDED_ROWS = 20
COUNT = "http_server_request_duration_seconds_count"
TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def new_volume(engine: Engine) -> Iterator[Callable[[], str]]:
    """new_volume(): a fresh named volume; removed, with the containers that used
    it, after the module's tests."""
    names: list[str] = []

    def create() -> str:
        names.append(engine("volume", "create", f"flask-stack-test-{uuid.uuid4().hex[:12]}"))
        return names[-1]

    yield create
    for name in names:
        users = engine("ps", "--all", "--quiet", "--filter", f"volume={name}").split()
        if users:
            engine("rm", "--force", *users)
        engine("volume", "rm", name)


def hardened_with(volume: str) -> tuple[str, ...]:
    return (*HARDENED, f"--volume={volume}:{INSTANCE}")


def run_command(run_image: Callable[..., Container], image: str, volume: str,
                *command: str) -> tuple[int, str]:
    """`docker run IMAGE COMMAND...`, hardened, with the instance volume: exit code, output."""
    container = run_image(image, args=hardened_with(volume), wait=False, command=command)
    return container.wait_exit(60), container.logs()


def product_names(page: str) -> list[str]:
    return re.findall(r'<td class="name">([^<]*)</td>', page)


def visits(page: str) -> int:
    found = re.search(r'<span id="visits">(\d+)</span>', page)
    assert found, page
    return int(found[1])


# --- package: an app package with blueprints, templates, SQLite, prestart.py


@pytest.fixture(scope="module")
def package_image(example_image: Callable[[str], str]) -> str:
    return example_image("package")


@pytest.fixture(scope="module")
def shop(run_image_for_module: Callable[..., Container], package_image: str,
         new_volume: Callable[[], str]) -> Container:
    return run_image_for_module(package_image, env=SHOP, args=hardened_with(new_volume()))


def test_package_page_renders_the_seeded_rows(shop: Container) -> None:
    page = requests.get(f"{shop.base_url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    names = product_names(page.text)
    assert len(names) == SEEDED_ROWS
    assert names == sorted(names)  # the page's ORDER BY
    assert "Moka pot" in names
    assert "<h1>Products</h1>" in page.text


def test_package_session_counts_visits_with_its_cookie(shop: Container) -> None:
    browser = requests.Session()
    counts = [visits(browser.get(f"{shop.base_url}/", timeout=10).text) for _ in range(3)]
    assert counts == [1, 2, 3]
    assert browser.cookies.get("session")
    # Without the cookie, a new session starts.
    assert visits(requests.get(f"{shop.base_url}/", timeout=10).text) == 1


@pytest.mark.parametrize(("url", "source", "content_type"), [
    ("/static/shop.css", PACKAGE / "shop" / "static" / "shop.css", "text/css"),
    ("/static/catalog/cup.svg", PACKAGE / "shop" / "catalog" / "static" / "cup.svg",
     "image/svg+xml"),
])
def test_package_and_blueprint_static_files_come_from_the_app(
        shop: Container, url: str, source: Path, content_type: str) -> None:
    page = requests.get(f"{shop.base_url}/", timeout=10).text
    assert f'"{url}"' in page  # the page uses it
    served = requests.get(f"{shop.base_url}{url}", timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"].split(";")[0] == content_type
    assert served.content == source.read_bytes()
    # Nginx does not have it: Flask served it, with Flask's caching headers.
    assert served.headers["Cache-Control"] == "no-cache"


def test_package_default_static_folder_is_served_by_nginx(shop: Container) -> None:
    served = requests.get(f"{shop.base_url}/static/robots.txt", timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "text/plain"
    assert served.content == (PACKAGE / "static" / "robots.txt").read_bytes()
    assert served.headers["Cache-Control"] == "public, max-age=3600"  # Nginx's, revalidated
    assert served.headers["ETag"] and served.headers["Last-Modified"]


def test_package_data_survives_a_restart_on_its_volume(
        run_image: Callable[..., Container], package_image: str,
        new_volume: Callable[[], str]) -> None:
    volume = new_volume()
    first = run_image(package_image, env=SHOP, args=hardened_with(volume))
    browser = requests.Session()
    assert visits(browser.get(f"{first.base_url}/", timeout=10).text) == 1
    ordered = browser.post(f"{first.base_url}/orders/", data={"product_id": 4, "quantity": 3},
                           allow_redirects=False, timeout=10)
    assert ordered.status_code == 303
    order_url = ordered.headers["Location"]
    assert re.fullmatch(r"/orders/\d+", order_url), order_url
    assert "made a secret key" in first.logs()
    assert first.stop() == 0

    second = run_image(package_image, env=SHOP, args=hardened_with(volume))
    logs = second.logs()
    assert "database /srv/app/instance/shop.sqlite at version 2" in logs  # prestart ran again
    assert "made a secret key" not in logs
    order = requests.get(f"{second.base_url}{order_url}", timeout=10)
    assert order.status_code == 200
    assert '<span class="quantity">3</span>' in order.text
    assert '<span class="name">Moka pot</span>' in order.text  # product 4 of the seed
    page = browser.get(f"{second.base_url}/", timeout=10).text
    assert len(product_names(page)) == SEEDED_ROWS  # the seed was not inserted twice
    assert visits(page) == 2  # the same session key, kept on the volume


def test_package_commands_run_in_the_app_directory(
        run_image: Callable[..., Container], package_image: str,
        new_volume: Callable[[], str]) -> None:
    volume = new_volume()
    for _ in range(2):  # the second run finds nothing to do
        code, output = run_command(run_image, package_image, volume,
                                   "flask", "--app", "shop", "init-db")
        assert code == 0, output
        assert "Database /srv/app/instance/shop.sqlite at version 2." in output
    code, output = run_command(run_image, package_image, volume,
                               "flask", "--app", "shop", "no-such-command")
    assert code == 2, output  # click's usage error, passed back
    assert "No such command 'no-such-command'" in output


def test_package_failing_prestart_stops_the_container_with_its_code(
        run_image: Callable[..., Container], package_image: str,
        new_volume: Callable[[], str]) -> None:
    volume = new_volume()
    # A database migrated by a newer version of the app: prestart.py refuses it.
    code, output = run_command(
        run_image, package_image, volume, "python", "-c",
        "import sqlite3\n"
        "sqlite3.connect('instance/shop.sqlite').execute('PRAGMA user_version = 9')")
    assert code == 0, output
    container = run_image(package_image, env=SHOP, args=hardened_with(volume), wait=False)
    assert container.wait_exit(60) == 3
    logs = container.logs()
    assert "refusing to run on a newer schema" in logs
    assert "/srv/app/prestart.py failed with exit code 3" in logs
    assert "Booting worker" not in logs


def app_records(container: Container, message: str) -> list[dict]:
    """The app's log records that start with `message`, once there is one (the
    log reaches the engine a moment after the answer) or LOG_DELAY_SECONDS passed."""
    deadline = time.monotonic() + LOG_DELAY_SECONDS
    while True:
        found = [fields for fields in records(container.logs())
                 if fields.get("source") == "app" and fields["message"].startswith(message)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_package_gets_per_route_metrics_and_joined_logs_with_no_line_of_its_own(
        shop: Container) -> None:
    """Issue 21's "done when": the unchanged package's requests are counted under
    its blueprints' URL rules, never their paths, and a line logged during a
    request carries that request's ids. The shop logs nothing itself: the line
    is Flask's own, for an order too large for SQLite's INTEGER (a 500)."""
    created = requests.post(f"{shop.base_url}/orders/", data={"product_id": 4, "quantity": 1},
                            allow_redirects=False, timeout=10)
    assert created.status_code == 303
    order = created.headers["Location"]
    # (method, path, form, status, the route the access log and the metrics give)
    sent = [("GET", "/", None, 200, "/"),
            ("GET", order, None, 200, "/orders/<int:order_id>"),
            ("GET", "/orders/999999", None, 404, "/orders/<int:order_id>"),
            ("GET", "/orders/first", None, 404, "unmatched"),  # the int converter refuses it
            ("GET", "/static/shop.css", None, 200, "/static/<path:filename>"),
            ("GET", "/static/catalog/cup.svg", None, 200, "/static/catalog/<path:filename>"),
            ("GET", "/static/robots.txt", None, 200, "static"),  # Nginx's own
            ("POST", "/orders/", {"product_id": 4, "quantity": 10**20}, 500, "/orders/")]
    ids = {created.headers["X-Request-ID"]: "/orders/"}
    for method, path, form, status, route in sent:
        answer = requests.request(method, f"{shop.base_url}{path}", data=form, timeout=10,
                                  allow_redirects=False, headers={"traceparent": TRACEPARENT})
        assert answer.status_code == status, (path, answer.text)
        ids[answer.headers["X-Request-ID"]] = route
    failed = answer.headers["X-Request-ID"]  # the last: the 500

    lines = access_log(shop, *ids)
    assert {request_id: lines[request_id]["route"] for request_id in ids} == ids
    found = scrape(shop.metrics_url)
    # Every line is counted under its route; the engine's health check may add
    # one of its own at any moment, so /healthz's count is left out.
    expected = Counter((line["method"], str(line["status"]), line["route"])
                       for line in lines.values() if line["route"] != HEALTH_PATH)
    for (method, status, route), count in expected.items():
        assert found.value(COUNT, http_request_method=method, http_response_status_code=status,
                           http_route=route) == count, (method, status, route)
    routes = {series["http_route"] for series in found.series(COUNT)}
    assert routes >= set(ids.values())
    assert not routes & {order, "/orders/999999", "/orders/first", "/static/shop.css"}

    # Flask's own line about the 500, joined to its access log line.
    (logged,) = app_records(shop, "Exception on /orders/ [POST]")
    assert logged["level"] == "error"
    assert "OverflowError" in logged["exception"]
    assert logged["request_id"] == lines[failed]["request_id"] == failed
    assert logged["trace_id"] == lines[failed]["trace_id"] == TRACE


@pytest.fixture
def chromium_driver(require: Callable[[object, str], None], tmp_path: Path
                    ) -> Iterator[webdriver.Chrome]:
    """Debian's Chromium, headless, driven by Debian's chromedriver (the same version)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    require(binary and driver, "Chromium or its driver is not installed "
                               "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options,
                               service=webdriver.ChromeService(executable_path=str(driver)))
    yield browser
    browser.quit()


def assert_styled(browser: webdriver.Chrome) -> None:
    """The shop's front page as Chromium shows it: shop.css's `h1 { color:
    rgb(110, 59, 22) }` applied, and every row's image (the blueprint's) decoded."""
    assert browser.title == "Products · Coffee Shop"
    color = browser.execute_script("return getComputedStyle(document.querySelector('h1')).color")
    assert color == "rgb(110, 59, 22)"
    widths = browser.execute_script(
        "return [...document.querySelectorAll('td img')].map(img => img.naturalWidth)")
    assert len(widths) == SEEDED_ROWS
    assert all(width > 0 for width in widths)


def test_package_page_in_chromium_uses_its_stylesheet(
        shop: Container, chromium_driver: webdriver.Chrome, tmp_path: Path) -> None:
    chromium_driver.get(f"{shop.base_url}/")
    assert_styled(chromium_driver)

    screenshot = tmp_path / "shop.png"
    assert chromium_driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_package_under_a_path_prefix_in_chromium(
        run_image: Callable[..., Container], package_image: str,
        new_volume: Callable[[], str], chromium_driver: webdriver.Chrome) -> None:
    """The same package, unchanged, mounted at /shop as behind a shared balancer:
    styled, its images shown, its links and its form under the prefix."""
    shop = run_image(package_image, env={**SHOP, "ROOT_PATH": "/shop"},
                     args=hardened_with(new_volume()))
    chromium_driver.get(f"{shop.base_url}/shop/")
    assert_styled(chromium_driver)
    home = chromium_driver.execute_script("return document.querySelector('header a').href")
    assert home == f"{shop.base_url}/shop/"
    # The order form posts under the prefix, and its redirect lands there.
    chromium_driver.execute_script("document.querySelector('form.order').submit()")
    deadline = time.monotonic() + 10
    while "/orders/" not in chromium_driver.current_url:
        assert time.monotonic() < deadline, chromium_driver.current_url
        time.sleep(0.1)
    assert chromium_driver.current_url.startswith(f"{shop.base_url}/shop/orders/")
    assert "Order" in chromium_driver.title


# --- websocket: flask-sock through Nginx's upgrade


@pytest.fixture(scope="module")
def echo(run_image_for_module: Callable[..., Container],
         example_image: Callable[[str], str]) -> Container:
    return run_image_for_module(example_image("websocket"), args=HARDENED)


def test_websocket_echoes_through_port_1300(echo: Container) -> None:
    index = requests.get(f"{echo.base_url}/", timeout=10)
    assert index.status_code == 200
    ws = websocket.create_connection(f"ws://127.0.0.1:{echo.port}/echo", timeout=10)
    try:
        for text in ("hello", "wörld", "x" * 70_000):  # the last needs a 64-bit length
            ws.send(text)
            assert ws.recv() == text
        ws.send_binary(b"\x00\xffbytes")
        assert ws.recv() == b"\x00\xffbytes"
        # Several in flight at once come back in order.
        for number in range(10):
            ws.send(str(number))
        assert [ws.recv() for _ in range(10)] == [str(number) for number in range(10)]
        # Ordinary requests are still answered while the socket is open.
        assert requests.get(f"{echo.base_url}/", timeout=10).json() == index.json()
        ws.send("still here")
        assert ws.recv() == "still here"
    finally:
        ws.close()


def test_websocket_url_the_app_makes_is_the_one_the_client_used(echo: Container) -> None:
    # url_for(_external=True) builds it from the Host header Nginx passes on.
    url = requests.get(f"{echo.base_url}/", timeout=10).json()["echo"]
    assert url == f"ws://127.0.0.1:{echo.port}/echo"


# --- native: Pillow and lxml wheels in the minimal image


@pytest.fixture(scope="module")
def native_image(example_image: Callable[[str], str]) -> str:
    return example_image("native")


@pytest.fixture(scope="module")
def native(run_image_for_module: Callable[..., Container], native_image: str) -> Container:
    return run_image_for_module(native_image, args=HARDENED)


def test_native_pillow_makes_a_png_thumbnail(native: Container) -> None:
    photo = io.BytesIO()
    Image.new("RGB", (640, 320), (200, 30, 30)).save(photo, "JPEG")
    thumbnail = requests.post(f"{native.base_url}/thumbnail", data=photo.getvalue(), timeout=10)
    assert thumbnail.status_code == 200
    assert thumbnail.headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert (image.format, image.size) == ("PNG", (128, 64))
        red, green, blue = image.convert("RGB").getpixel((64, 32))
        assert abs(red - 200) < 8 and green < 40 and blue < 40

    refused = requests.post(f"{native.base_url}/thumbnail", data=b"not an image", timeout=10)
    assert refused.status_code == 400


def test_native_lxml_transforms_a_feed(native: Container) -> None:
    feed = ("<rss version='2.0'><channel><title>News &amp; notes</title>"
            "<item><title>First</title><link>https://example.org/1</link></item>"
            "<item><title>Second &lt;2&gt;</title><link>https://example.org/2</link></item>"
            "</channel></rss>")
    page = requests.post(f"{native.base_url}/feed.html", data=feed.encode(), timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.text == ('<h1>News &amp; notes</h1><ul>\n'
                         '<li><a href="https://example.org/1">First</a></li>\n'
                         '<li><a href="https://example.org/2">Second &lt;2&gt;</a></li>\n'
                         '</ul>\n')

    malformed = requests.post(f"{native.base_url}/feed.html", data=b"<rss><channel>", timeout=10)
    assert malformed.status_code == 400


def test_native_image_still_has_no_shell(engine: Engine, native_image: str) -> None:
    shell = subprocess.run([engine.command, "run", "--rm", "--entrypoint", "sh", native_image,
                            "-c", "echo reached"], capture_output=True, text=True, timeout=60)
    assert shell.returncode != 0
    assert "reached" not in shell.stdout
