"""The app's extension objects, created unbound and set up in the factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """The declarative base, so that models are typed SQLAlchemy 2 classes."""


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    # db.Model is a subclass of Base that Flask-SQLAlchemy makes at run time, which
    # type checkers cannot follow; the models subclass this name instead.
    class Model(Base):
        __abstract__ = True

else:
    Model = db.Model
csrf = CSRFProtect()

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see this page."
login_manager.login_message_category = "info"
