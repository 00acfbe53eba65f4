"""Radiologist review of flagged studies: a person decides what the machine could not.

- ``app``: the FastAPI web app (``create_app``), server-rendered pages and a JSON API;
- ``service``: the queue, claims, human decisions and negative-list flags on the results database;
- ``accounts``: users, roles and argon2 password hashes;
- ``images``: key images rendered from the DICOM, findings marked;
- ``labels``: the human decisions as a labelled CSV for AI training;
- ``cli``: ``qc-pipeline review serve | create-user | set-password | disable-user | users | export-labels``.
"""
