"""SQLite in the instance folder: a connection per request, numbered migrations, `init-db`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import click
from flask import Flask, current_app, g

# The seed: what a new shop sells (name, price in cents, stock).
PRODUCTS = [
    ("Espresso cup", 900, 40), ("Cappuccino cup", 1100, 35), ("Latte glass", 1300, 20),
    ("Moka pot", 3500, 12), ("Pour-over dripper", 2400, 18), ("Paper filters (100)", 600, 80),
    ("Hand grinder", 6500, 7), ("Gooseneck kettle", 4800, 9), ("Milk jug", 1500, 25),
    ("Tamper", 2200, 14), ("Knock box", 2600, 6), ("Scale", 3900, 11),
    ("Cold brew jar", 2800, 15), ("French press", 3200, 10), ("Travel mug", 1800, 30),
    ("Coffee canister", 2100, 22), ("Cleaning tablets", 900, 50), ("Descaler", 1200, 45),
    ("Barista apron", 2700, 8), ("Beans, house blend (1 kg)", 2400, 60),
]


def create_tables(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
               " price_cents INTEGER NOT NULL, stock INTEGER NOT NULL)")
    db.execute("CREATE TABLE purchase (id INTEGER PRIMARY KEY,"
               " product_id INTEGER NOT NULL REFERENCES product (id),"
               " quantity INTEGER NOT NULL CHECK (quantity > 0),"
               " created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")


def seed_products(db: sqlite3.Connection) -> None:
    db.executemany("INSERT INTO product (name, price_cents, stock) VALUES (?, ?, ?)", PRODUCTS)


# Each runs once, in order; PRAGMA user_version counts those done. The seed is
# one of them, so it is inserted exactly once.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (create_tables, seed_products)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer version of this app."""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    return db


def get_db() -> sqlite3.Connection:
    """This request's connection, opened on first use."""
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def migrate(path: str) -> int:
    """Bring the database up to date; its version afterwards.

    Safe when several replicas start at once: BEGIN IMMEDIATE takes SQLite's
    write lock before the version is read, so one migrates while the others
    wait, then find nothing left to do.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    db.isolation_level = None  # transactions are ours to begin and end
    try:
        db.execute("BEGIN IMMEDIATE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise SchemaTooNew(f"{path} is at version {version}; this code knows "
                               f"{len(MIGRATIONS)}: refusing to run on a newer schema")
        for migration in MIGRATIONS[version:]:
            migration(db)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()
    return len(MIGRATIONS)


@click.command("init-db")
def init_db_command() -> None:
    """Create the database or bring it up to date (prestart.py does this at every start)."""
    path = current_app.config["DATABASE"]
    click.echo(f"Database {path} at version {migrate(path)}.")


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
