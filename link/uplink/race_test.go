//go:build race

package uplink

// The race detector multiplies memory use; TestIdleConnMemory only
// reports under it.
const raceEnabled = true
