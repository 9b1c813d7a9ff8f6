"""Shared test support: loopback model server, throwaway PostgreSQL, project builders."""
