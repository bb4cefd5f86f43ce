"""The bundled hardware profiles: one YAML file each, package data."""
