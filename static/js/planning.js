/* planning pages (see static/css/planning.css): behaviour from data attributes only. */
"use strict";
