package main

import (
	"fmt"
	"runtime"

	"example.com/ciapp/stats"
)

func main() {
	fmt.Printf("go: sum below 1000000 = %d (GOMAXPROCS>0: %v)\n", stats.ParallelSum(1000000, 8), runtime.GOMAXPROCS(0) > 0)
}
