#!/usr/bin/python3
"""map_remote: requests sent to another URL than their client asked for.

nginx is the origin (plain and TLS), curl the client. A rule maps plain
HTTP to HTTPS and back, inside a CONNECT tunnel and from an HTTP/2 client
too; the origin gets the mapped URL's Host; each flow records the
client's URL and where reel sent it (mapped_to, in reel flow, HAR and
NDJSON); a rule making no http(s) URL is a 502 naming it; reel replay
sends a mapped flow where it went; a bad rule is refused.
"""
import json
import os
import tempfile
import unittest

from proxyenv import TMPBASE, Origin, Reel, curl, main, only_flow, stop_class


class MapRemoteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        os.makedirs(TMPBASE, exist_ok=True)
        cls.root = tempfile.mkdtemp(prefix="map-remote.", dir=TMPBASE)
        cls.origin = Origin(os.path.join(cls.root, "origin"), h2=True)
        o = cls.origin
        cls.reel = Reel(cls.root, "mr", "upstream_trusted_ca=" + o.ca)
        cls.rules = [
            # plain HTTP to the TLS origin
            r"|^http://127\.0\.0\.1:%d/to-tls/|https://localhost:%d/" % (o.http_port, o.https_port),
            # HTTPS (in a tunnel) to the plain origin, a group kept
            r"|^https://localhost:%d/to-plain/(.*)|http://127.0.0.1:%d/$1"
            % (o.https_port, o.http_port),
            # a result that is no http(s) URL
            r"|^http://127\.0\.0\.1:%d/bad|ftp://example.test/" % o.http_port,
        ]
        cls.reel.set_config("set", "map_remote", json.dumps(cls.rules))

    @classmethod
    def tearDownClass(cls):
        stop_class(cls)

    def last(self, path):
        return only_flow(self, self.reel, path)

    def test_plain_to_tls(self):
        o, r = self.origin, self.reel
        out = curl(r, "http://127.0.0.1:%d/to-tls/host" % o.http_port)
        self.assertEqual(out.stdout, b"localhost:%d\n" % o.https_port)  # the mapped Host
        row, full = self.last("/to-tls/host")
        self.assertEqual(row["url"], "http://127.0.0.1:%d/to-tls/host" % o.http_port)
        want = "https://localhost:%d/host" % o.https_port
        self.assertEqual(full["request"]["mapped_to"], want)
        self.assertEqual(full["server_conn"]["sni"], "localhost")
        text = r.cli("flow", "mr", str(row["id"])).stdout.decode()
        self.assertIn("\n~ map_remote sent it to %s (Host from it)\n" % want, text)
        # HAR and NDJSON say it; reel import keeps it
        har = os.path.join(self.root, "mapped.har")
        r.cli("export", "mr", "~u /to-tls/host$", "-o", har)
        with open(har) as f:
            (entry,) = json.load(f)["log"]["entries"]
        self.assertEqual(entry["_reel"]["mapped_to"], want)
        nd = json.loads(r.cli("export", "mr", "~u /to-tls/host$", "--format", "ndjson", "-o",
                              "-").stdout)
        self.assertEqual(nd["request"]["mapped_to"], want)
        r.cli("import", har, "--into", "mr-back")
        back = json.loads(r.cli("flow", "mr-back", "1", "--json").stdout)
        self.assertEqual(back["request"]["mapped_to"], want)
        # reel replay sends it where it went
        out = r.cli("replay", "mr", str(row["id"]), "--into", "mr-replays", "--json", "--set",
                    "upstream_trusted_ca=" + o.ca)
        (rep,) = json.loads(out.stdout)["replays"]
        self.assertEqual((rep["status"], rep["url"]), (200, want), rep)

    def test_tls_to_plain_http1_and_http2(self):
        o, r = self.origin, self.reel
        for args, path in ((["--http1.1"], "/to-plain/100b?h1"), (["--http2"], "/to-plain/100b?h2")):
            out = curl(r, *args, o.url(path, https=True))
            self.assertEqual(len(out.stdout), 100)
            row, full = self.last(path)
            self.assertEqual(row["url"], "https://localhost:%d%s" % (o.https_port, path))
            self.assertEqual(full["request"]["mapped_to"],
                             "http://127.0.0.1:%d%s" % (o.http_port, path.replace("/to-plain", "")))
            self.assertIsNone(full["server_conn"]["tls_version"])

    def test_no_match_and_bad_result(self):
        o, r = self.origin, self.reel
        curl(r, o.url("/100b?unmapped"))
        self.assertIsNone(self.last("/100b?unmapped")[1]["request"]["mapped_to"])
        out = curl(r, "-o", "/dev/null", "-w", "%{http_code}",
                   "http://127.0.0.1:%d/bad" % o.http_port, check=False)
        self.assertEqual(out.stdout, b"502")
        row, _ = self.last("/bad")
        self.assertEqual(row["error"], "map_remote rule '%s' made 'ftp://example.test/' of the URL, "
                                       "which is not an http:// or https:// URL" % self.rules[2])

    def test_bad_rules_refused(self):
        for rule, why in (("abc", "a rule starts with its separator"),
                          ("|(|x", "bad pattern at 1"),
                          ("|a|b|c", "three parts")):
            out = self.reel.cli("config", "mr", "set", "map_remote", json.dumps([rule]),
                                check=False)
            self.assertNotEqual(out.returncode, 0, rule)
            self.assertIn(why.encode(), out.stderr)


if __name__ == "__main__":
    main()
