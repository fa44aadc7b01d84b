"""Built-in dataset plugins (imported as ``sidbench.datasets``). Every module here is scanned."""
