// Command bcrypt-tool is installed next to Dex by scripts/peers/install.sh (it is built in the
// same wrapper module, with the bcrypt package Dex itself uses):
//
//	bcrypt-tool -hash PASSWORD [-cost 10]            prints a bcrypt hash for Dex's config
//	bcrypt-tool -bench [-cost 10] [-seconds 10] [-threads N]
//	                                                 prints raw verifications per second (JSON)
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func main() {
	hash := flag.String("hash", "", "print a bcrypt hash of this password")
	bench := flag.Bool("bench", false, "measure raw verifications per second")
	cost := flag.Int("cost", bcrypt.DefaultCost, "bcrypt cost")
	seconds := flag.Float64("seconds", 10, "seconds to measure")
	threads := flag.Int("threads", runtime.NumCPU(), "verifying goroutines")
	flag.Parse()
	switch {
	case *hash != "":
		h, err := bcrypt.GenerateFromPassword([]byte(*hash), *cost)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(string(h))
	case *bench:
		password := []byte("bench password 123")
		h, err := bcrypt.GenerateFromPassword(password, *cost)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var total atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		until := start.Add(time.Duration(*seconds * float64(time.Second)))
		for i := 0; i < *threads; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(until) {
					if bcrypt.CompareHashAndPassword(h, password) == nil {
						total.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		out, _ := json.Marshal(map[string]any{
			"name": "bcrypt-verify", "cost": *cost, "threads": *threads,
			"verifications": total.Load(), "rate": float64(total.Load()) / elapsed,
		})
		fmt.Println(string(out))
	default:
		flag.Usage()
		os.Exit(2)
	}
}
