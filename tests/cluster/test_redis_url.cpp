// SPDX-License-Identifier: BSL-1.0
// redis_url::parse: the forms of WEBSOCKET_REDIS_URL and the errors that name the setting.

#include <stdexcept>
#include <string>

#include <catch2/catch.hpp>

#include <wsmanager/cluster/detail/redis_url.hpp>

using wsmanager::cluster::detail::redis_url;

TEST_CASE("redis_url: host, port and database", "[redis_url]") {
    redis_url const plain = redis_url::parse("redis://localhost");
    CHECK(plain.host == "localhost");
    CHECK(plain.port == 6379);
    CHECK(plain.db == 0);
    CHECK(plain.password.empty());

    redis_url const full = redis_url::parse("redis://10.0.0.5:6380/3");
    CHECK(full.host == "10.0.0.5");
    CHECK(full.port == 6380);
    CHECK(full.db == 3);

    redis_url const v6 = redis_url::parse("redis://[::1]:7000/1");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 7000);
    CHECK(v6.db == 1);

    CHECK(redis_url::parse("redis://[::1]").port == 6379);
    CHECK(redis_url::parse("redis://h/").db == 0);
}

TEST_CASE("redis_url: user information", "[redis_url]") {
    redis_url const both = redis_url::parse("redis://app:s%40cret@redis:6379/0");
    CHECK(both.username == "app");
    CHECK(both.password == "s@cret");
    CHECK(both.host == "redis");

    redis_url const password_only = redis_url::parse("redis://:pw@redis");
    CHECK(password_only.username.empty());
    CHECK(password_only.password == "pw");

    CHECK(redis_url::parse("redis://pw@redis").password == "pw");
}

TEST_CASE("redis_url: malformed URLs name the setting", "[redis_url]") {
    for (char const* bad :
         {"http://localhost", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
          "redis://h:x", "redis://h:", "redis://h/x", "redis://h/-1", "redis://h?db=1",
          "redis://[::1", "redis://[::1]x", "redis://a:%zz@h", "redis://a:%4@h"}) {
        INFO(bad);
        CHECK_THROWS_WITH(redis_url::parse(bad, "WEBSOCKET_REDIS_URL"),
                          Catch::Contains("WEBSOCKET_REDIS_URL"));
    }
}
