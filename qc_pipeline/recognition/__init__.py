"""The recognition API for hospital systems: lookup of recognisable studies, recognition events."""
