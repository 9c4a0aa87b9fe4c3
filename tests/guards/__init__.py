"""Session, permission, role and organization guards."""
