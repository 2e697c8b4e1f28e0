package secrets

// Keystone's own settings (the GitHub App created by setup) are sealed like
// apps' secrets, under a binding no app can have: an app's owner is never
// empty, so a setting's ciphertext cannot be passed off as an app's secret,
// nor the other way round.

func settingBinding(name string) binding { return binding{app: "keystone.setting", name: name} }

// SealSetting encrypts Keystone's own setting name under the primary key.
func (k *Keyring) SealSetting(name string, plaintext []byte) (keyID string, sealed []byte, err error) {
	return k.seal(settingBinding(name), plaintext)
}

// OpenSetting decrypts what SealSetting produced for name under keyID.
func (k *Keyring) OpenSetting(name, keyID string, sealed []byte) ([]byte, error) {
	return k.open(settingBinding(name), keyID, sealed)
}

// Keys is the keyring the service seals with.
func (s *Service) Keys() *Keyring { return s.keys }
