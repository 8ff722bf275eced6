-- The admin also changes a user's role, language and display name: those changes are kept too.
ALTER TABLE user_changes DROP CONSTRAINT IF EXISTS user_changes_change_check;
ALTER TABLE user_changes ADD CONSTRAINT user_changes_change_check CHECK (change IN (
    'created', 'password_reset', 'deactivated', 'reactivated', 'role_changed', 'locale_changed', 'renamed'));
