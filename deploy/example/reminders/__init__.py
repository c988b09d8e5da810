"""The example application of the deployment recipes in deploy/.

- ``reminders.tasks``: the handlers, on a plain `Router`; workers run
  ``redistimers worker reminders.tasks:router``.
- ``reminders.web``: the Flask app that schedules them, under gunicorn:
  ``gunicorn 'reminders.web:create_app()'``.

Both read the Redis from ``$REDIS_URL`` and the namespace from ``$REDISTIMERS_NAMESPACE``,
so one set of environment variables configures the web app and its workers.
"""
