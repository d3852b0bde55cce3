//! Whole-system tests of Ironbridge. The tests themselves are in `tests/tests/system/` (the
//! gateway run in-process through `gateway::Gateway`) and `tests/interop/` (pytest suites with
//! paho-mqtt and Mosquitto's clients against the real binary); tests of the `ironbridge` binary
//! itself are in `gateway/tests/`, where Cargo provides its path. This library holds no code.
