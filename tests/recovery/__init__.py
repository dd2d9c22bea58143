"""Session recovery: histories, session stores, and the runtime that resumes sessions."""
