"""The projector: keeps the SQL read models from the services' events (services/common/projection.py)."""
