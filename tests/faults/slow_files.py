"""A file server whose answers can be made slow, for the eviction test.

    python3 slow_files.py --bind ADDRESS --port PORT --dir DIR --delay-file FILE

Serves DIR over HTTP. While FILE exists, every GET first sleeps as many
seconds as FILE says, so a pod whose init container fetches from here stays
not Ready that long: the test's slow replacement.
"""

import argparse
import functools
import http.server
import os
import time


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    delay_file = ""

    def do_GET(self):  # noqa: N802 (http.server's name)
        try:
            with open(self.delay_file, encoding="utf-8") as f:
                time.sleep(float(f.read().strip() or 0))
        except FileNotFoundError:
            pass
        super().do_GET()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--delay-file", required=True)
    args = parser.parse_args()
    SlowHandler.delay_file = os.path.abspath(args.delay_file)
    handler = functools.partial(SlowHandler, directory=args.dir)
    http.server.ThreadingHTTPServer((args.bind, args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
