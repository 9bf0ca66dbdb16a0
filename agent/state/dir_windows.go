package state

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// DefaultDir is where the service keeps its state.
func DefaultDir() string {
	base := os.Getenv("ProgramData")
	if base == "" {
		base = `C:\ProgramData`
	}
	return filepath.Join(base, "emSign", "Bot")
}

// ownerOnly gives full control to SYSTEM and Administrators and nobody else,
// without inheriting ProgramData's "Users may read": mode bits mean nothing
// on Windows, the DACL is what keeps the key private.
const ownerOnly = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func restrictDir(path string) error { return setDACL(path) }

func restrictFile(path string) error { return setDACL(path) }

func setDACL(path string) error {
	sd, err := windows.SecurityDescriptorFromString(ownerOnly)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		return fmt.Errorf("restrict access to %s: %w", path, err)
	}
	return nil
}
