"""pytest fixtures for plugin authors. (Scaffold.)"""
