//! One PAM conversation (`pam_authenticate` + `pam_acct_mgmt`) with a user name and password.

/// Whether PAM service `service` accepts `user`/`password` (authentication and account).
/// Blocking (PAM's failure delay): call it on a blocking thread.
pub fn check(user: &str, password: &str, service: &str) -> bool {
    if user.contains('\0') || password.contains('\0') || service.contains('\0') {
        return false;
    }
    let mut client = match pam::Client::with_password(service) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(service, %error, "cannot start a PAM conversation");
            return false;
        }
    };
    client.conversation_mut().set_credentials(user, password);
    match client.authenticate() {
        Ok(()) => true,
        Err(error) => {
            tracing::info!(user, service, %error, "PAM refused");
            false
        }
    }
}
