"""Drop-in reward functions for RL trainers that call the reflectrm HTTP service (serve/app.py).

Both read the service's address from $REFLECTRM_URL (default http://127.0.0.1:8000) and send
$REFLECTRM_API_TOKEN as a bearer token when it is set.
"""
