"""mclab: model customization lab. Import the submodules you need; nothing heavy runs here."""

__version__ = "0.1.0"
