"""Orders: a form on the front page posts here; each order has its own page."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from shop.db import get_db

bp = Blueprint("orders", __name__, url_prefix="/orders")


@bp.post("/")
def create() -> Response:
    product_id = request.form.get("product_id", type=int)
    quantity = request.form.get("quantity", type=int)
    if product_id is None or quantity is None or quantity < 1:
        abort(400, "product_id and a quantity of at least 1 are required")
    db = get_db()
    if db.execute("SELECT 1 FROM product WHERE id = ?", (product_id,)).fetchone() is None:
        abort(404, "no such product")
    cursor = db.execute("INSERT INTO purchase (product_id, quantity) VALUES (?, ?)",
                        (product_id, quantity))
    db.commit()
    return redirect(url_for("orders.show", order_id=cursor.lastrowid), code=303)


@bp.get("/<int:order_id>")
def show(order_id: int) -> str:
    order = get_db().execute(
        "SELECT purchase.id, quantity, created, name, price_cents FROM purchase"
        " JOIN product ON product.id = purchase.product_id WHERE purchase.id = ?",
        (order_id,)).fetchone()
    if order is None:
        abort(404)
    return render_template("orders/order.html", order=order)
