package ldap

// syncDir does nothing on Windows: directories cannot be opened for
// fsync there, and NTFS journals renames itself.
func syncDir(string) error { return nil }
