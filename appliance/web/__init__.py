"""The web app the box serves: the Flask factory (app.py), blueprints, templates and static."""
