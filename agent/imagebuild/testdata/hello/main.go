// Command hello prints a greeting with its arguments; imagebuild's tests
// build it into an image.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Printf("hello from go: %s\n", strings.Join(os.Args[1:], " "))
}
