"""The command line (``fruit-assets``): the top of the package, free to import any layer below."""
