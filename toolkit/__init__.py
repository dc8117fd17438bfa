"""Deep image clustering toolkit: the core engine (hook points, recipes, tracking).

The core knows the five hook points and never a particular method; methods are plugins.
"""

__version__ = "0.1.0"
#: Version of the plugin API. Plugins may declare the range they support.
API_VERSION = "2.2"
