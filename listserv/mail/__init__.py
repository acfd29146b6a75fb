"""Pure mail helpers with no database: addresses, headers, automatic-mail detection, rendering, the wire serializer."""
