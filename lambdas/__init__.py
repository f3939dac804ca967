"""AWS Lambda handlers: thin adapters over the plain functions in each module and in `shared`."""
