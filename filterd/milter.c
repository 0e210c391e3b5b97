/* placeholder */
extern int sift_placeholder;
