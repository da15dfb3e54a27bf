"""Images in messages: what a message keeps of an image (ImageRef), reading and checking image files, their
pixels for an engine, data URIs for a server, the cache key that tells two images apart, thumbnails as data.

Pillow is imported only where pixels are needed (the `vision` extra): a text chat never loads it."""
