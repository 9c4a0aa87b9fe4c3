"""The bystander suite: an ordinary Flask app, tested with and without the extension.

``notes/`` is written the way Flask apps are written by people who never heard of
flask_resilience. Its tests run once as the app is (``[plain]``) and once with
``Resilience(app, db=db)`` added (``[resilience]``): adding the extension to a
working app must not change what the app's own tests see.
"""
