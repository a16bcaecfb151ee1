//go:build race

package rules

// raceEnabled scales down the heaviest tests: the race detector makes
// evaluation 10-20 times slower, and the point there is finding races.
const raceEnabled = true
