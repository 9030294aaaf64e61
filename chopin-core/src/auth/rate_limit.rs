//! Rate limiting per user: `Auth` as a [`RateLimitKey`], charging a request with a valid access
//! token to `user:<sub>`.

use super::{Auth, Claims, bearer_token};
use crate::rate_limit::{Buckets, RateLimitKey, RateLimitLayer, RateLimitRequest};

impl RateLimitKey for Auth {
    fn buckets(&self, request: &RateLimitRequest<'_>, buckets: &mut Buckets) {
        if let Some(token) = bearer_token(request.headers(), self.settings().cookie.as_deref())
            && let Ok(claims) = self.decode::<Claims>(token)
        {
            buckets.charge(format!("user:{}", claims.sub));
        }
    }
}

impl RateLimitLayer {
    /// Key authenticated requests by user (`sub` of a valid access token) instead of IP:
    /// [`key_by(auth)`](RateLimitLayer::key_by).
    pub fn per_user(self, auth: Auth) -> Self {
        self.key_by(auth)
    }
}
