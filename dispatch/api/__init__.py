"""HTTP controllers: thin translations between the wire and the services."""
