"""The app's forms: Flask-WTF adds the CSRF field to each."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

# Enough to catch typos; the address is never mailed, so no deliverability check.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class LoginForm(FlaskForm):
    email = StringField(
        "Email",
        validators=[
            DataRequired(message="Enter your email address."),
            Length(max=254),
            Regexp(EMAIL_PATTERN, message="Enter a valid email address."),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password.")])
    remember = BooleanField("Keep me logged in")
    submit = SubmitField("Log in")


class NoteForm(FlaskForm):
    title = StringField(
        "Title",
        validators=[
            DataRequired(message="A note needs a title."),
            Length(max=120, message="Keep the title under 120 characters."),
        ],
    )
    body = TextAreaField("Text", validators=[Length(max=5000)])
    submit = SubmitField("Save")
