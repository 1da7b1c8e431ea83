"""Admin for executions. (Filled in by the web issue.)"""
