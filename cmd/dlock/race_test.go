//go:build unix && race

package main

// raceEnabled builds the dlock binary under test with -race too.
const raceEnabled = true
