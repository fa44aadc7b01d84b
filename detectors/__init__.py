"""Built-in detector plugins (imported as ``sidbench.detectors``). Every module here is scanned:
drop ``mynew.py`` beside these files and it is discovered."""
