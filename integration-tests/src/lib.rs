//! Black-box tests of servicekonto live in `tests/`: one test binary (`integration`) whose tests
//! start the real server on `127.0.0.1:0` and drive it over HTTP with real client libraries.
