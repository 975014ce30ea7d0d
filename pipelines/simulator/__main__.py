"""`python -m pipelines.simulator [options]`: the same as `smsledger simulator`."""

import argparse

from pipelines.simulator.server import add_arguments, config_from_args, serve

parser = argparse.ArgumentParser(prog="python -m pipelines.simulator", description="serve the simulated SMS API")
add_arguments(parser)
try:
    serve(config_from_args(parser.parse_args()))
except KeyboardInterrupt:
    pass
