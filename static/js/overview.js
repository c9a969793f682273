/* overview pages (see static/css/overview.css): behaviour from data attributes only. */
"use strict";
