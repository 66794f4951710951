"""Device code"""
