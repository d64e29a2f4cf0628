"""quickstart: the built-in default (`lm quickstart`), spelled out. About 1.3M parameters
trained on the Python standard library's source for 600 steps of 16 x 128 tokens."""


def get_config():
    return {}
