"""`python -m pipelines.simulator [options]`: the same as `smsledger simulator`."""

import argparse

from pipelines.simulator.config import add_arguments, config_from_args
from pipelines.simulator.server import serve

parser = argparse.ArgumentParser(prog="python -m pipelines.simulator", description="serve the simulated SMS API")
add_arguments(parser)
try:
    serve(config_from_args(parser.parse_args()))
except KeyboardInterrupt:
    pass
