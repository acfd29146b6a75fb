"""What a request means: phrase files, language, commands, free text, the administrivia guard."""
