"""The shop's front page. The blueprint has a static folder of its own, served
under the app's /static/ URL: Nginx does not have these files, so it passes
their requests on to Flask."""

from __future__ import annotations

from flask import Blueprint, render_template, session

from shop.db import get_db

bp = Blueprint("catalog", __name__, static_folder="static", static_url_path="/static/catalog")


@bp.get("/")
def index() -> str:
    products = get_db().execute(
        "SELECT id, name, price_cents, stock FROM product ORDER BY name").fetchall()
    session["visits"] = session.get("visits", 0) + 1
    return render_template("catalog/index.html", products=products, visits=session["visits"])
