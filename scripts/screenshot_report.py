"""Screenshot a musadv report page with headless Chromium (Debian's chromium + chromium-driver).

    python scripts/screenshot_report.py RUN_DIR/report.html shot.png [--width 1400] [--height 2400]
"""

import argparse
import functools
import http.server
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=2400)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(args.page.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", f"--window-size={args.width},{args.height}"):
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/{args.page.name}")
        browser.save_screenshot(str(args.png))
    finally:
        browser.quit()
        server.shutdown()
    print(args.png)


if __name__ == "__main__":
    main()
