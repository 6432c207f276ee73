// Package gpio drives the station's digital I/O: the reject actuator output,
// part-present and encoder inputs, and ready/fault lamps. Hardware access
// stays behind a small interface so the pipeline can be tested with a fake.
package gpio
