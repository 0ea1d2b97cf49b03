/* badsmtp web page: placeholder, replaced by the page itself */
