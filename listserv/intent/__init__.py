"""What a request means: phrase files, commands, free text, the administrivia guard."""
