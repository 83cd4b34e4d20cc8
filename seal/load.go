package seal

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// KeyFileName is the dev-mode key file inside the data directory.
const KeyFileName = "secret.key"

// DefaultKeyID is the id of a key given without one.
const DefaultKeyID = "k1"

// Load returns the keyring from SWITCHBOARD_SECRET_KEY. Without it, dev mode
// reads <dataDir>/secret.key, generating it on the first start, and
// production fails with an error saying to set the variable.
func Load(dataDir string, dev bool) (*Keyring, error) {
	if v := strings.TrimSpace(os.Getenv(EnvVar)); v != "" {
		kr, err := ParseKeys(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvVar, err)
		}
		return kr, nil
	}
	if !dev {
		return nil, fmt.Errorf("seal: %s is not set; production mode needs it: set it to id:base64key with a 32-byte key, e.g. %s=k1:$(openssl rand -base64 32)", EnvVar, EnvVar)
	}
	return loadKeyFile(filepath.Join(dataDir, KeyFileName))
}

// LoadConfigured returns the keyring an operator has configured for
// dataDir: SWITCHBOARD_SECRET_KEY, else an existing <dataDir>/secret.key.
// Unlike Load it never creates a key, so a command that only reads (or
// re-seals) stored secrets cannot leave a fresh key behind that the gateway
// would then refuse to start with. It returns nil and no error when neither
// is there; from says where the keys came from.
func LoadConfigured(dataDir string) (kr *Keyring, from string, err error) {
	if v := strings.TrimSpace(os.Getenv(EnvVar)); v != "" {
		kr, err := ParseKeys(v)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", EnvVar, err)
		}
		return kr, EnvVar, nil
	}
	path := filepath.Join(dataDir, KeyFileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	kr, err = readKeyFile(path)
	if err != nil {
		return nil, "", err
	}
	return kr, path, nil
}

// ParseKeys parses the SWITCHBOARD_SECRET_KEY format (see the package
// documentation). Errors name the entry by position and id, never its key.
func ParseKeys(s string) (*Keyring, error) {
	var keys []Key
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("seal: key entry %d is empty", i+1)
		}
		id, b64 := DefaultKeyID, entry
		if before, after, ok := strings.Cut(entry, ":"); ok {
			id, b64 = strings.TrimSpace(before), strings.TrimSpace(after)
		}
		if err := validID(id); err != nil {
			return nil, fmt.Errorf("seal: key entry %d: %w", i+1, err)
		}
		secret, err := decodeKey(b64)
		if err != nil {
			return nil, fmt.Errorf("seal: key entry %d (id %q): %w", i+1, id, err)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return NewKeyring(keys...)
}

// FormatKey returns the entry for one key in the SWITCHBOARD_SECRET_KEY format.
func FormatKey(id string, secret []byte) string {
	return id + ":" + base64.StdEncoding.EncodeToString(secret)
}

func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("no key after the id")
	}
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("key is not valid base64")
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("key decodes to %d bytes; want exactly %d (generate one with `openssl rand -base64 32`)", len(b), KeySize)
	}
	return b, nil
}

// loadKeyFile reads the dev key file, or creates it if it does not exist.
// O_EXCL makes exactly one of two concurrent first starts the creator; the
// other waits briefly for the creator to finish writing, then reads it.
func loadKeyFile(path string) (*Keyring, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("seal: create data directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return createKeyFile(f, path)
	case errors.Is(err, fs.ErrExist):
		return readKeyFile(path)
	default:
		return nil, fmt.Errorf("seal: create key file: %w", err)
	}
}

func createKeyFile(f *os.File, path string) (*Keyring, error) {
	secret, err := NewRandomKey()
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	_, err = f.WriteString(FormatKey(DefaultKeyID, secret) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("seal: write key file %s: %w", path, err)
	}
	return NewKeyring(Key{ID: DefaultKeyID, Secret: secret})
}

// keyFileWait bounds how long a start waits for a concurrent start to
// finish writing a freshly created key file.
const keyFileWait = 2 * time.Second

func readKeyFile(path string) (*Keyring, error) {
	deadline := time.Now().Add(keyFileWait)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("seal: key file: %w", err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("seal: key file %s is readable by group or others (mode %04o); run `chmod 600 %s`", path, fi.Mode().Perm(), path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("seal: read key file: %w", err)
		}
		content := strings.TrimSpace(string(b))
		kr, perr := ParseKeys(content)
		if perr != nil && time.Now().Before(deadline) {
			// A concurrent first start may still be writing it.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if content == "" {
			return nil, fmt.Errorf("seal: key file %s is empty; delete it to generate a new key (anything sealed with the lost key stays unreadable)", path)
		}
		if perr != nil {
			return nil, fmt.Errorf("key file %s: %w", path, perr)
		}
		return kr, nil
	}
}
